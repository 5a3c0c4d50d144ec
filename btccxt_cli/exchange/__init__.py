"""The only package that imports ccxt / ccxt.pro: client factory, error mapping, taps."""
