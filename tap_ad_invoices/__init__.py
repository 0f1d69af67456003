"""tap-ad-invoices: every invoice from Amazon Ads, Google Ads and Amazon Business."""
