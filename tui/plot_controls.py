"""The training plots of a dashboard and their own keys: smoothing, the x axis, x zoom (also the
mouse wheel over a plot) and ignoring outliers. View state only: nothing goes to the engine, so
they act in every dashboard (live, attached, show) and never say why not. Their keys, titles and
help are actions.PLOTS; the handlers are here."""

from __future__ import annotations

import dataclasses

from .dashboard import Plot, PlotView
from .layer_views import train_mode_tests
from .plots import (
    MAX_ZOOM,
    SMOOTHING,
    X_AXES,
    PlotOptions,
    accuracy_plot,
    accuracy_title,
    legend,
    loss_plot,
    loss_title,
    marker_kinds,
)


class PlotControls:
    """Mixed into a watching app (run_app.RunApp): `plot` holds the options; each action (its key
    in actions.PLOTS) changes one and redraws."""

    plot = PlotOptions()

    def plot_options(self) -> PlotOptions:
        """The options as the plots use them: with the loss plot's log scale (l) and NO_COLOR."""
        return dataclasses.replace(self.plot, log_scale=self.log_scale, color=not self.no_color)

    def plots(self) -> list[Plot]:
        """The loss plot and the accuracy plot (or the d key's layers by depth), drawn with the options."""
        version = lambda: self.view.points_version  # noqa: E731
        return [
            Plot(
                "loss",
                lambda w, h: loss_plot(self.view, w, h, self.plot_options()),
                version,
                lambda compact: (
                    self.loss_title(),
                    legend(
                        *self.series_names(),
                        "test",
                        *train_mode_tests(self.view),
                        *marker_kinds(self.view),
                        compact=compact,
                    ),
                ),
            ),
            Plot(
                "accuracy",
                lambda w, h: (
                    self.depth_plot(w, h) if self.depth else accuracy_plot(self.view, w, h, self.plot_options())
                ),
                lambda: (self.view.points_version, self.view.layers_version, self.depth),
                lambda compact: (
                    (self.depth_title(), "d: next view")
                    if self.depth
                    else (
                        accuracy_title(self.plot_options()),
                        legend(*self.series_names(), "test", *train_mode_tests(self.view), compact=compact),
                    )
                ),
            ),
        ]

    def loss_title(self) -> str:
        return loss_title(self.view, self.plot_options())

    def series_names(self) -> tuple[str, ...]:
        """The train curves' legend entries: the smoothed one while smoothing is on."""
        return ("train", "smoothed") if self.plot.smoothing else ("train",)

    def change_plot(self, **changes) -> None:
        self.plot = dataclasses.replace(self.plot, **changes)
        self.restyle_plots()

    def action_smoothing(self) -> None:
        i = SMOOTHING.index(self.plot.smoothing) if self.plot.smoothing in SMOOTHING else 0
        self.change_plot(smoothing=SMOOTHING[(i + 1) % len(SMOOTHING)])

    def action_x_axis(self) -> None:
        self.change_plot(axis=X_AXES[(X_AXES.index(self.plot.axis) + 1) % len(X_AXES)])

    def action_zoom_in(self) -> None:
        self.change_plot(zoom=min(MAX_ZOOM, self.plot.zoom + 1))

    def action_zoom_out(self) -> None:
        self.change_plot(zoom=max(0, self.plot.zoom - 1))

    def action_zoom_reset(self) -> None:
        self.change_plot(zoom=0)

    def action_outliers(self) -> None:
        self.change_plot(outliers=not self.plot.outliers)

    def on_mouse_scroll_up(self, event) -> None:
        if isinstance(event.widget, PlotView):
            self.action_zoom_in()

    def on_mouse_scroll_down(self, event) -> None:
        if isinstance(event.widget, PlotView):
            self.action_zoom_out()
