"""Operations: the job entry point, schedules, backfills, submit, status, reset, replay, the lake census, the
embedded one-machine stack and the demo. Reads the job registry; pipelines never import it."""
