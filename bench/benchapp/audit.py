"""auditrum's registration of the ``auditrum`` variant's models, where its README puts it:
an ``audit.py`` in the app, imported by auditrum's app when Django starts. Every column is
tracked (no ``track_only``), as this project's layouts and pghistory track every column."""

from auditrum.integrations.django.audit import register

from . import AUDITRUM, PREFIXES
from .models import AUDITRUM_TPCB_MODELS, ROW_MODELS

for _prefix in PREFIXES:
    register(ROW_MODELS[_prefix, AUDITRUM])
for _model in AUDITRUM_TPCB_MODELS:
    register(_model)
