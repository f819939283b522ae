import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openrouter_site.settings")

app = Celery("openrouter_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
