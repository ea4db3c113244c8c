"""Workflows: DAGs of typed tasks (`TaskNode`, `app.workflow(...)`, `WorkflowHandle`).

Kept free of imports: `horsies_django.models` imports `.models` from here while Django loads apps.
"""
