-- An incident first seen at a later status than `reported` (its first update lost, or sent
-- before the feed existed) measured its durations from that first sighting: first seen
-- already `resolved`, its resolution took 0 s; first seen `on_scene`, its response took 0 s.
-- Those zeros pulled the medians and means of the incident studies down. A duration whose
-- milestone is the first sighting itself is now NULL (unknown); one measured from an earlier
-- first sighting stays, as the lower bound it is, and one from `reported` is unchanged.
-- A view: nothing is stored or rebuilt.

DROP VIEW IF EXISTS incident_lifecycle;

CREATE VIEW IF NOT EXISTS incident_lifecycle AS
SELECT incident_id, any(zone_id) AS zone_id, argMin(incident_type, event_time) AS incident_type,
       argMin(severity, event_time) AS severity_reported,
       argMax(severity, event_time) AS severity_last,
       argMax(status, event_time) AS status_last,
       min(event_time) AS first_seen_at,
       minIfOrNull(event_time, status = 'reported') AS reported_at,
       minIfOrNull(event_time, status = 'dispatched') AS dispatched_at,
       minIfOrNull(event_time, status = 'on_scene') AS on_scene_at,
       minIfOrNull(event_time, status = 'resolved') AS resolved_at,
       minIfOrNull(event_time, status = 'cancelled') AS cancelled_at,
       if(reported_at IS NULL AND dispatched_at = first_seen_at, NULL,
          dateDiff('millisecond', ifNull(reported_at, first_seen_at), dispatched_at) / 1000)
           AS dispatch_s,
       if(reported_at IS NULL AND on_scene_at = first_seen_at, NULL,
          dateDiff('millisecond', ifNull(reported_at, first_seen_at), on_scene_at) / 1000)
           AS response_s,
       if(reported_at IS NULL AND resolved_at = first_seen_at, NULL,
          dateDiff('millisecond', ifNull(reported_at, first_seen_at), resolved_at) / 1000)
           AS resolution_s
FROM incidents_reported
GROUP BY incident_id
COMMENT 'One row per incident: type, severity, status timestamps, dispatch / response (reported → on scene) / resolution seconds (NULL when first seen at that status)';
