-- The alert event kind `reminded` joins the kinds the alerts table's comments list: an alert
-- none of whose events was sent (all of them older than the webhooks' age limit, found in a
-- catch-up's backlog) that is still active once its data is current is sent once, as
-- `reminded` (docs/alerts.md, "Webhooks"). Comments only: no data moves.

ALTER TABLE alerts COMMENT COLUMN kind 'fired | severity_changed | acknowledged | escalated | reminded | cleared';

ALTER TABLE alerts MODIFY COMMENT 'Alert lifecycle events (AlertEvent): fired, severity_changed, acknowledged, escalated, reminded, cleared';
