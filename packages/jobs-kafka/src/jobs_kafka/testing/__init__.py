"""Helpers for testing against Kafka: a throw-away Tansu broker."""
