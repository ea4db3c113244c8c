from django.apps import AppConfig


class SoakappConfig(AppConfig):
    name = "bench.soakapp"
    label = "soakapp"
