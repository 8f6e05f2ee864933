"""Connecting a WhatsApp Business App number (Coexistence): the /onboard page, its one-time links, the
channels it stores, and the contact and history syncs that follow. See docs/onboarding.md."""
