"""Third-party access for people: a user's consents (``/v1/consents``) and client registration by admins
(``/v1/admin/clients``). The consent pages are in :mod:`brokerlink.web.consent`."""
