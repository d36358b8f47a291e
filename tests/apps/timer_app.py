"""Timers for the scheduling tests: invocations are recorded in `FIRED`."""

import azure.functions as func

app = func.FunctionApp()
FIRED: list[tuple[str, bool]] = []


@app.timer_trigger(schedule="*/10 * * * * *", arg_name="timer")
def every_ten_seconds(timer: func.TimerRequest) -> None:
    FIRED.append(("every_ten_seconds", timer.past_due))


@app.timer_trigger(schedule="0 30 9 * * MON-FRI", arg_name="timer", run_on_startup=True)
async def weekday_morning(timer: func.TimerRequest) -> None:
    FIRED.append(("weekday_morning", timer.past_due))
