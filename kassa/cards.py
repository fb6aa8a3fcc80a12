"""Card numbers, as far as Kassa needs to recognise one: the bank checks them, the logs hide
them."""


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits ends in its Luhn check digit, as every card number does."""
    numbers = [int(d) for d in reversed(digits)]
    doubled = [d * 2 - 9 if d > 4 else d * 2 for d in numbers[1::2]]
    return (sum(numbers[0::2]) + sum(doubled)) % 10 == 0
