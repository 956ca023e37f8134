"""Layer 3: principals, users and sessions, password hashing; OAuth, vault and audit join in later issues."""
