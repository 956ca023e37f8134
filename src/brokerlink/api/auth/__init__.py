"""Sign-up, sign-in and sessions for first-party users."""
