"""The authorization server over HTTP (issue 5, ADR 0023): a Litestar adapter and the /oauth routes."""
