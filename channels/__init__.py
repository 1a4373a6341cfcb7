"""Customer message channels: one module per provider with the same functions (see base.py).

    twilio_sms, twilio_whatsapp, sendgrid_email, outbox
Use `ChannelRegistry(settings).provider(channel)` to get the configured module for
"sms" / "whatsapp" / "email".
"""
