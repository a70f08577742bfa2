"""The Windows tier: the Windows .exe files, built here, run under Wine."""
