"""Shared runtime of cronlake: settings, lake storage, the crash-safe batch protocol, the job runner, Spark
sessions and the embedded one-machine stack. Every ingest script, Spark job and the dashboard import it."""
