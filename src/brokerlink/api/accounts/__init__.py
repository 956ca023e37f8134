"""Linked broker connections and their accounts."""
