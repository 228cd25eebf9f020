-- Why: a PATCH claims its upload in the database for a short, renewed lease, so that two
-- server instances behind a load balancer never append to the same upload at once (an
-- in-process lock cannot see the other instance). A crashed instance's claim simply expires.
ALTER TABLE uploads ADD COLUMN claim_token uuid, ADD COLUMN claimed_until timestamptz;
