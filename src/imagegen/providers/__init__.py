"""Providers: one module (or small package) per upstream, all behind ``base.Provider``."""
