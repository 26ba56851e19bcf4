"""The service's domain core: what a job submission is, independent of HTTP."""
