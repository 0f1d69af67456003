"""google_ads source (not built yet): contributes no streams until its issue lands."""

SOURCE = None
