-- Why: an alert's message is stored and logged in English; supervisors read it in their own
-- language on the live map, said again from the phrase it was made of and its parameters
-- (venue/rules.py PHRASES). Alerts raised before have none: the map shows their message.
ALTER TABLE venue_alerts
    ADD COLUMN phrase text NOT NULL DEFAULT '',
    ADD COLUMN params jsonb NOT NULL DEFAULT '{}';
