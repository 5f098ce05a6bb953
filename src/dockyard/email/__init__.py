"""Email: an outbox written in the transaction that causes a mail, sent by a job after commit.

``services.Mailer.queue`` renders a template and adds the outbox row and its ``email.send`` job in the
caller's transaction; ``jobs.register`` adds the job that sends it through the ``MailSender`` chosen from
the settings (``senders.build_sender``): SMTP, or ``.eml`` files under ``DATA_DIR/mail`` when no SMTP server
is configured.
"""
