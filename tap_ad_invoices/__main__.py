from tap_ad_invoices.tap import cli

cli()
