"""The dashboard and the Errors page in the admin index and the navigation sidebar.

Django lists only registered models there, so each page has a table-less proxy model whose list
opens it. Whoever may see tasks may follow these links; nothing can be added or changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from ..models import Dashboard, ErrorGroupEntry, Task
from .attempts import OPERATE_PERMISSION, ReadOnly

if TYPE_CHECKING:
    LinkAdminBase = admin.ModelAdmin[Task]
else:
    LinkAdminBase = admin.ModelAdmin


class PageLink(ReadOnly, LinkAdminBase):
    url_name = ""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("horsies_django.view_task") or request.user.has_perm(OPERATE_PERMISSION)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(reverse(f"{self.admin_site.name}:{self.url_name}"))


@admin.register(Dashboard)
class DashboardLink(PageLink):
    url_name = "horsies_django_task_dashboard"


@admin.register(ErrorGroupEntry)
class ErrorsLink(PageLink):
    url_name = "horsies_django_task_errors"
