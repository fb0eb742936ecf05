"""Test doubles of the upstreams imagegen talks to (one module or small package per upstream)."""
