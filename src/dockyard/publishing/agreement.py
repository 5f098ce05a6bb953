"""The publisher agreement: its current version and text. A publisher accepts one version (recorded with
who and when, ``Publisher.agreement_*``); when the text changes, the version changes and every publisher is
asked to accept the new one before submitting anything again."""

from __future__ import annotations

AGREEMENT_VERSION = "2026-12"
AGREEMENT_TITLE = "Publisher agreement"

AGREEMENT_TEXT = """\
By publishing on this store, the organisation named in this profile (the **publisher**) agrees that:

1. **It has the right to distribute** every image, file and text it submits, and their licences allow the
   store to host them and offer them to customers on the terms of each product's licence agreement.
2. **What it says is true.** Its legal entity name, website, company email and phone number are correct, and
   it keeps them up to date.
3. **Its products are safe to run.** It does not knowingly ship malware, and it fixes or discloses security
   vulnerabilities found in its images within the time the store's policy sets for their severity.
4. **The store reviews before it publishes.** Every revision of a product is reviewed by the store team,
   which may ask for changes, reject it, or take a published product off the store when it breaks this
   agreement.
5. **It supports its products** as each product's support information and SLA say.
6. **Customers' data stays theirs.** It collects no data from customers' deployments without their consent.

The store may change this agreement; it then asks every publisher to accept the new version.
"""
