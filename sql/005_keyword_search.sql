-- Keyword search: a weighted tsvector per song, title (weight A) over lyrics (weight B), kept
-- current by triggers so that every writer (the assets, a bulk COPY, a hand-run fix) gets it.
ALTER TABLE lyrics ADD COLUMN search_vector tsvector;

CREATE FUNCTION lyrics_search_vector(title text, body text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT setweight(to_tsvector('english', coalesce(title, '')), 'A')
              || setweight(to_tsvector('english', coalesce(body, '')), 'B') $$;

CREATE FUNCTION lyrics_search_vector_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.search_vector := lyrics_search_vector(
        (SELECT title FROM songs WHERE song_id = NEW.song_id), NEW.text);
    RETURN NEW;
END $$;

CREATE TRIGGER lyrics_search_vector_update
    BEFORE INSERT OR UPDATE OF text ON lyrics
    FOR EACH ROW EXECUTE FUNCTION lyrics_search_vector_trigger();

-- a retitled song (Genius edits titles) re-weights its document
CREATE FUNCTION songs_title_search_vector_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lyrics SET search_vector = lyrics_search_vector(NEW.title, text)
     WHERE song_id = NEW.song_id;
    RETURN NULL;
END $$;

CREATE TRIGGER songs_title_search_vector_update
    AFTER UPDATE OF title ON songs
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title)
    EXECUTE FUNCTION songs_title_search_vector_trigger();

UPDATE lyrics l SET search_vector = lyrics_search_vector(s.title, l.text)
  FROM songs s WHERE s.song_id = l.song_id;

CREATE INDEX lyrics_search_vector_idx ON lyrics USING gin (search_vector);

-- the search filters: year range and artist narrow candidates before any ranking
CREATE INDEX songs_release_date_idx ON songs (release_date);
