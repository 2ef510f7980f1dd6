-- First start of the compose stack's PostgreSQL: a second database for Dagster's own storage,
-- beside the warehouse (POSTGRES_DB). pgvector is created in the warehouse by migration 001.
CREATE DATABASE dagster;
