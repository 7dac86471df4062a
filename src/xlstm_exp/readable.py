"""Numbers as people read them on a console: `16.2k`, `1m05s`."""


def readable_count(value: float) -> str:
    """16234 -> `16.2k`, 2.5e6 -> `2.50M`, 999.7 -> `1.00k`, 130 -> `130`: three significant
    digits with an SI suffix."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= 0.9995 * size:
            scaled = value / size
            decimals = 0 if abs(scaled) >= 99.95 else 1 if abs(scaled) >= 9.995 else 2
            return f"{scaled:.{decimals}f}{suffix}"
    return f"{value:.0f}" if abs(value) >= 99.95 else f"{value:.3g}"


def readable_duration(seconds: float) -> str:
    """65 -> `1m05s`, 7380 -> `2h03m`, 9 -> `9s`."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
