"""The report page's sections, one module per study (:mod:`.stability`, :mod:`.consensus`) and
:mod:`.common` for the report-wide ones; :func:`.common.report_sections` imports every module here."""
