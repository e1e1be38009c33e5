-- Alerts merged into another: a vulnerable workload's own alert joins the alert of whoever exposed it
-- (detectors/correlation.py, "Stories that continue at another anchor"). Its last version has status
-- 'merged' and names the alert it joined; lists of open alerts leave merged ones out.
ALTER TABLE ${database}.alerts ${on_cluster}
    ADD COLUMN IF NOT EXISTS merged_into String DEFAULT '';
