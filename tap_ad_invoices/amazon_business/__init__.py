"""amazon_business source (not built yet): contributes no streams until its issue lands."""

SOURCE = None
