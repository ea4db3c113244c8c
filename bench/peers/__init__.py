"""The benchmark's tasks for the peer queues (django-tasks-db, procrastinate), one module each."""
