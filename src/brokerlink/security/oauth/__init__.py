"""Third-party access (issue 5): the OAuth 2 authorization server on the FAPI 2.0 profile."""
