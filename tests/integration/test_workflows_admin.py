"""The workflows admin page through Django's test client: list, graph, links, pause/resume/cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from horsies_django import OnError, TaskNode, WorkflowHandle, WorkflowStatus, app
from horsies_django.models import Workflow
from horsies_django.worker import Worker
from tests.taskapp import workflow_tasks as wt

from .test_admin import login, make_user  # noqa: F401  (the login fixture)

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:horsies_django_workflow_changelist"


def workflow(name: str = "etl", on_error: OnError = OnError.FAIL, fail: bool = False) -> WorkflowHandle[Any]:
    first = TaskNode(fn=wt.fail if fail else wt.square, kwargs={"code": "X"} if fail else {"n": 2}, node_id="first")
    second = TaskNode(fn=wt.square, kwargs={"n": 3}, waits_for=[first], node_id="<second>")
    return app.workflow(name, tasks=[first, second], output=second, on_error=on_error).start().unwrap()


def change_url(handle: WorkflowHandle[Any]) -> str:
    return reverse("admin:horsies_django_workflow_change", args=[handle.workflow_id])


@pytest.fixture
def operator(login: Callable[..., Client]) -> Client:  # noqa: F811
    return login("view_workflow", "view_task", "operate_task")


def test_list_shows_status_progress_and_times(operator: Client) -> None:
    done = workflow("finished")
    Worker(burst=True).run()
    running = workflow("<b>unfinished</b>")
    page = operator.get(reverse(CHANGELIST)).content.decode()
    assert "hz-badge--completed" in page and "hz-badge--running" in page
    assert "2/2" in page and "0/2" in page
    assert "&lt;b&gt;unfinished&lt;/b&gt;" in page and "<b>unfinished" not in page
    assert done.workflow_id[:8] in page and running.workflow_id[:8] in page
    filtered = operator.get(reverse(CHANGELIST) + "?status__exact=RUNNING").content.decode()
    assert running.workflow_id[:8] in filtered and done.workflow_id[:8] not in filtered
    assert done.workflow_id[:8] in operator.get(reverse(CHANGELIST) + f"?q={done.workflow_id}").content.decode()


def test_detail_draws_the_graph_with_links_to_tasks_and_the_task_links_back(operator: Client) -> None:
    handle = workflow()
    Worker(burst=True).run()
    page = operator.get(change_url(handle)).content.decode()
    assert '<svg class="hz-dag"' in page
    assert page.count('class="hz-dag-node hz-dag-node--completed"') == 2
    assert page.count('class="hz-dag-edge"') == 1
    assert "&lt;second&gt;" in page and "<second>" not in page
    tasks = handle.tasks().unwrap()
    for info in tasks:
        assert reverse("admin:horsies_django_task_change", args=[info.task_id]) in page
    task_page = operator.get(reverse("admin:horsies_django_task_change", args=[tasks[0].task_id])).content.decode()
    assert change_url(handle) in task_page and "node first" in task_page


def test_pause_resume_cancel_need_the_operate_permission_and_a_confirmation(
    operator: Client,
    login: Callable[..., Client],  # noqa: F811
) -> None:
    handle = workflow()
    viewer = login("view_workflow")
    assert "Pause" not in viewer.get(change_url(handle)).content.decode()
    response = viewer.post(
        reverse(CHANGELIST), {"action": "pause_workflows", "_selected_action": [handle.workflow_id], "post": "yes"}
    )
    assert handle.status().unwrap() == WorkflowStatus.RUNNING, response.status_code
    page = operator.get(change_url(handle)).content.decode()
    assert "pause_workflows" in page and "cancel_workflows" in page and "resume_workflows" not in page
    data = {"action": "pause_workflows", "_selected_action": [handle.workflow_id], "_from_detail": "1"}
    confirm = operator.post(reverse(CHANGELIST), {**data, "index": "0"}).content.decode()
    assert "Yes, pause" in confirm and handle.status().unwrap() == WorkflowStatus.RUNNING
    done = operator.post(reverse(CHANGELIST), {**data, "post": "yes"}, follow=True)
    assert "1 workflow paused." in done.content.decode()
    assert handle.status().unwrap() == WorkflowStatus.PAUSED
    operator.post(
        reverse(CHANGELIST),
        {"action": "resume_workflows", "_selected_action": [handle.workflow_id], "post": "yes"},
    )
    assert handle.status().unwrap() == WorkflowStatus.RUNNING
    operator.post(
        reverse(CHANGELIST),
        {"action": "cancel_workflows", "_selected_action": [handle.workflow_id], "post": "yes"},
    )
    assert Workflow.objects.get(pk=handle.workflow_id).status == WorkflowStatus.CANCELLED
    page = operator.get(change_url(handle)).content.decode()
    assert "cancel_workflows" not in page and "hz-dag-node--cancelled" in page


def test_workflows_cannot_be_added_changed_or_deleted(operator: Client) -> None:
    handle = workflow()
    assert operator.get(reverse("admin:horsies_django_workflow_add")).status_code == 403
    assert operator.get(reverse("admin:horsies_django_workflow_delete", args=[handle.workflow_id])).status_code == 403
