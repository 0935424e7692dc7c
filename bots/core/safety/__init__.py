"""Care and safety: moderation of what comes in and goes out, care mode for people in crisis,
healthy-use nudges, sponsor pressure and human-claim checks, the not-professional-advice line.

Platform-neutral like the rest of the core. settings.py is imported by bots/config.py, so this file
imports nothing (an import here would run while the config module is still loading).
"""
