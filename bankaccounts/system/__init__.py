"""The system of process applications: Commands -> Sagas -> Accounts -> Sagas."""
