"""One decoder module per webhook update family (messages, statuses, echoes, history and state sync, templates,
account, groups, calls), each with a `HANDLERS` table of the fields it reads; bot.meta.parser walks deliveries."""
