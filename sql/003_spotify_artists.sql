-- Spotify's view of each artist. Every column is nullable: since February 2026 development-mode
-- apps may not read followers or popularity, and the pipeline stores what it is allowed to see.
ALTER TABLE artists
    ADD COLUMN spotify_id          text,
    ADD COLUMN spotify_followers   integer,
    ADD COLUMN spotify_popularity  smallint,
    ADD COLUMN spotify_genres      text[],
    ADD COLUMN spotify_updated_at  timestamptz;
