"""The bookstore example from the README, also the project the test suite runs against."""
