"""Account pages, by topic: signing in and out (signin), sign-up and email confirmation (signup),
forgotten passwords (password), account settings (settings) and organisations (orgs)."""

from __future__ import annotations

from dockyard.accounts.pages import orgs, password, settings, signin, signup

routes = [*signin.routes, *signup.routes, *password.routes, *settings.routes, *orgs.routes]
