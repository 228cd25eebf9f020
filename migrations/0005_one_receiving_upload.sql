-- Why: each receiving upload may grow to max_bid_bytes on disk, so a bidder able to open any
-- number of them at once could fill the server's storage. At most one upload per tender, lot
-- and organisation is receiving at a time: a client resumes that one (or lets it complete or
-- fail) before starting another. Complete and failed uploads do not count, so a new bid can
-- still replace an earlier one. The server maps this name to 409 upload_in_progress.
--
-- Uploads left receiving side by side before this migration: all but the most recently
-- updated one of each lot and organisation are failed, as if abandoned.
UPDATE uploads u SET status = 'failed', failure = 'abandoned', updated_at = now()
FROM (SELECT id, row_number() OVER (PARTITION BY tender_id, lot_code, organisation_id
                                    ORDER BY updated_at DESC, id) AS rank
      FROM uploads WHERE status = 'receiving') newest
WHERE u.id = newest.id AND newest.rank > 1;

CREATE UNIQUE INDEX uploads_one_receiving_key ON uploads (tender_id, lot_code, organisation_id)
    WHERE status = 'receiving';
