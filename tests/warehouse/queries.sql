-- "Querying your invoices": the examples of README.md, run verbatim by
-- tests/warehouse/test_readme_queries.py against a warehouse loaded through Meltano.
-- Each query starts with "-- name:". Tables live in the schema `ad_invoices`
-- (target-postgres default_target_schema); `invoices` holds every platform's
-- invoices and credit memos in one shape, credit memos with negative amounts.

-- name: spend_by_platform_and_month
-- Spend per platform, month of issue and currency. Credit memos net out; amounts
-- are never converted between currencies.
SELECT platform,
       date_trunc('month', issue_date)::date AS month,
       currency,
       sum(total_amount) AS total_amount,
       count(*) AS documents
FROM ad_invoices.invoices
GROUP BY platform, month, currency
ORDER BY platform, month, currency;

-- name: unpaid_past_due
-- Invoices still (partly) open after their due date, oldest first. Only platforms
-- that report a payment status (Amazon Ads, Amazon Business, Meta) can appear here.
SELECT platform,
       account_id,
       invoice_number,
       status,
       due_date,
       current_date - due_date AS days_overdue,
       currency,
       total_amount
FROM ad_invoices.invoices
WHERE status IN ('unpaid', 'partially_paid')
  AND due_date < current_date
ORDER BY due_date, platform, account_id, invoice_number;

-- name: unpaid_past_due_amounts
-- What is still owed on those invoices, from the Amazon Ads statement itself.
SELECT s.account_id,
       s.invoice_number,
       s.due_date,
       s.currency,
       s.remaining_amount
FROM ad_invoices.amazon_ads_billing_statements AS s
WHERE s.remaining_amount > 0
  AND s.due_date < current_date
ORDER BY s.due_date, s.account_id, s.invoice_number;

-- name: invoices_without_stored_pdf
-- Invoices and credit memos with no PDF in your document store, by platform: a document
-- the platform has not issued yet, one that failed (see the run's FAILED lines), or
-- Amazon Ads when only the statements stream is selected (the report carries no PDF).
SELECT platform,
       account_id,
       invoice_number,
       document_kind,
       issue_date
FROM ad_invoices.invoices
WHERE document_uri IS NULL
ORDER BY platform, issue_date, account_id, invoice_number;

-- name: statement_columns_as_written
-- Every column of an Amazon Ads statement is kept as written in the JSONB column
-- `columns`, under its original header: here the notes of the credit notes.
SELECT account_id,
       invoice_number,
       columns->>'Document Type' AS document_type,
       columns->>'Notes' AS notes
FROM ad_invoices.amazon_ads_billing_statements
WHERE columns->>'Notes' <> ''
ORDER BY account_id, invoice_number;
