from django.apps import AppConfig


class TaskappConfig(AppConfig):
    name = "tests.taskapp"
    label = "taskapp"
