-- The warehouse schema. Every table is keyed by a source id (Genius song or artist id) so that
-- re-running any asset is an idempotent upsert. content_hash columns let each stage see whether
-- its input changed since it last ran, so an unchanged partition costs no remote calls.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE artists (
    artist_id       bigint PRIMARY KEY,                 -- Genius artist id
    partition_key   text NOT NULL UNIQUE,               -- the Dagster dynamic partition (slug)
    name            text NOT NULL,
    url             text,
    image_url       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE songs (
    song_id             bigint PRIMARY KEY,             -- Genius song id
    artist_id           bigint NOT NULL REFERENCES artists (artist_id),
    title               text NOT NULL,
    full_title          text,
    url                 text NOT NULL,
    path                text NOT NULL,
    lyrics_state        text NOT NULL,
    release_date        date,
    album               text,
    featured_artists    text[] NOT NULL DEFAULT '{}',
    pageviews           bigint,
    -- NULL for a song we keep in the index; otherwise why it is not a song to analyse
    skip_reason         text,
    index_hash          text NOT NULL,                  -- hash of the listing fields we track
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX songs_artist_idx ON songs (artist_id);

CREATE TABLE lyrics (
    song_id             bigint PRIMARY KEY REFERENCES songs (song_id) ON DELETE CASCADE,
    status              text NOT NULL CHECK (status IN ('lyrics', 'instrumental', 'missing')),
    text                text NOT NULL DEFAULT '',
    content_hash        text NOT NULL,
    -- the songs.lyrics_state the page was fetched under; a change triggers a re-fetch
    fetched_lyrics_state text NOT NULL,
    source_url          text NOT NULL,
    fetched_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lyric_sections (
    song_id         bigint NOT NULL REFERENCES lyrics (song_id) ON DELETE CASCADE,
    ordinal         integer NOT NULL,
    header          text,
    performers      text[] NOT NULL DEFAULT '{}',
    lines           text[] NOT NULL,
    PRIMARY KEY (song_id, ordinal)
);

CREATE TABLE spotify_tracks (
    song_id             bigint PRIMARY KEY REFERENCES songs (song_id) ON DELETE CASCADE,
    match_status        text NOT NULL CHECK (match_status IN ('matched', 'unmatched')),
    unmatched_reason    text,
    confidence          real,
    margin              real,
    spotify_id          text,
    name                text,
    artists             text[],
    album               text,
    release_date        text,
    duration_ms         integer,
    popularity          smallint,
    explicit            boolean,
    isrc                text,
    -- audio features: NULL where the Spotify app may not read them (403 since 2024-11-27)
    danceability        real,
    energy              real,
    valence             real,
    tempo               real,
    speechiness         real,
    acousticness        real,
    instrumentalness    real,
    liveness            real,
    loudness            real,
    input_hash          text NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spotify_tracks_spotify_id_idx ON spotify_tracks (spotify_id);

CREATE TABLE lyric_features (
    song_id                 bigint PRIMARY KEY REFERENCES lyrics (song_id) ON DELETE CASCADE,
    feature_version         text NOT NULL,
    content_hash            text NOT NULL,              -- lyrics.content_hash the row was computed from
    line_count              integer NOT NULL,
    word_count              integer NOT NULL,
    unique_word_ratio       real NOT NULL,
    avg_words_per_line      real NOT NULL,
    avg_syllables_per_line  real NOT NULL,
    rhyme_density           real NOT NULL,
    multisyllabic_ratio     real NOT NULL,
    repetition_ratio        real NOT NULL,
    profanity_ratio         real NOT NULL,
    section_count           integer NOT NULL,
    performer_count         integer NOT NULL,
    features                jsonb NOT NULL,             -- every feature, including the ones above
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE analyses (
    song_id         bigint NOT NULL REFERENCES lyrics (song_id) ON DELETE CASCADE,
    model           text NOT NULL,                      -- 'rule-based' or the LLM model id
    prompt_version  text NOT NULL,
    analyzer        text NOT NULL,                      -- e.g. 'rule-based (fallback: timeout)'
    content_hash    text NOT NULL,
    mood            text NOT NULL,
    sentiment       real NOT NULL CHECK (sentiment BETWEEN -1 AND 1),
    themes          text[] NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    rhyme           smallint NOT NULL CHECK (rhyme BETWEEN 1 AND 10),
    wordplay        smallint NOT NULL CHECK (wordplay BETWEEN 1 AND 10),
    flow            smallint NOT NULL CHECK (flow BETWEEN 1 AND 10),
    storytelling    smallint NOT NULL CHECK (storytelling BETWEEN 1 AND 10),
    complexity      smallint NOT NULL CHECK (complexity BETWEEN 1 AND 10),
    quality         real NOT NULL CHECK (quality BETWEEN 1 AND 10),
    explicitness    text NOT NULL,
    language        text NOT NULL,
    summary         text NOT NULL,
    tokens_in       integer,
    tokens_out      integer,
    latency_ms      real,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (song_id, model, prompt_version)
);

-- Vectors are stored without a fixed dimension so that several embedding backends can live side
-- by side; the search index is a per-model partial expression index that casts to the model's
-- dimension (pgvector's documented pattern for mixed dimensions).
CREATE TABLE song_embeddings (
    song_id         bigint NOT NULL REFERENCES lyrics (song_id) ON DELETE CASCADE,
    model           text NOT NULL,
    dim             integer NOT NULL,
    content_hash    text NOT NULL,
    embedding       vector NOT NULL,                    -- pooled over the song's sections
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (song_id, model)
);

CREATE TABLE section_embeddings (
    song_id         bigint NOT NULL,
    model           text NOT NULL,
    ordinal         integer NOT NULL,
    header          text,                               -- the section it came from, e.g. 'Verse 2'
    text            text NOT NULL,
    embedding       vector NOT NULL,
    PRIMARY KEY (song_id, model, ordinal),
    FOREIGN KEY (song_id, model) REFERENCES song_embeddings (song_id, model) ON DELETE CASCADE
);

CREATE TABLE search_index_builds (
    model           text PRIMARY KEY,
    index_name      text NOT NULL,
    fingerprint     text NOT NULL,                      -- what was indexed; unchanged means no rebuild
    vectors         integer NOT NULL,
    build_seconds   real NOT NULL,
    built_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evaluation_runs (
    run_id          text NOT NULL,
    model_name      text NOT NULL,                      -- 'ridge', 'random', 'rule-based', ...
    evaluated_at    timestamptz NOT NULL DEFAULT now(),
    dataset_hash    text NOT NULL,
    label_source    text NOT NULL,
    n_train         integer NOT NULL,
    n_test          integer NOT NULL,
    mae             double precision NOT NULL,
    rmse            double precision NOT NULL,
    params          jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, model_name)
);
