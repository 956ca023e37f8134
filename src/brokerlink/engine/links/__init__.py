"""Linked broker accounts at run time: adapters, event persistence, recovery and order commands."""
