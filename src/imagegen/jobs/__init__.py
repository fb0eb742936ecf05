"""Generations as jobs: persisted state, run in-process, waited on, cancelled."""
