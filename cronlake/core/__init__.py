"""The core of cronlake: settings, lake storage, the crash-safe batch protocol, the job runner and its job
declarations, Spark sessions, MongoDB and Kafka clients. It names no pipeline: pipelines import it, never the
reverse."""
