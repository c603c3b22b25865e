"""Deployment: the local Kafka launcher, compose and cluster assets. Sits beside the data flow."""
