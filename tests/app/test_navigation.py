"""Keyboard navigation and high-DPI icons."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage

from app.icons import icon
from app.main_window import MainWindow
from app.session import Session


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(Session(output_root=tmp_path))
    qtbot.addWidget(w)
    w.show()
    w.activateWindow()
    qtbot.waitActive(w)
    return w


@pytest.mark.parametrize(
    "name", ["dockyard", "load", "inspect", "convert", "test", "export", "summary"]
)
@pytest.mark.parametrize("ratio", [1.0, 2.0, 3.0])
def test_icons_render_sharp_at_every_scale(qtbot, name, ratio):
    pixmap = icon(name).pixmap(QSize(20, 20), ratio)
    # Drawn at full device resolution (not a 20 px bitmap scaled up), and not blank.
    assert pixmap.width() == pixmap.height() == round(20 * ratio)
    image = pixmap.toImage().convertToFormat(QImage.Format.Format_ARGB32)
    opaque = sum(
        image.pixelColor(x, y).alpha() > 128
        for x in range(image.width())
        for y in range(image.height())
    )
    assert opaque > 0.05 * image.width() * image.height()
    if name != "dockyard":  # line icons turn white on the selection highlight
        selected = icon(name).pixmap(QSize(20, 20), ratio, QIcon.Mode.Selected).toImage()
        assert selected.width() == round(20 * ratio)
        colours = {
            selected.pixelColor(x, y).name()
            for x in range(selected.width())
            for y in range(selected.height())
            if selected.pixelColor(x, y).alpha() == 255
        }
        assert colours == {"#ffffff"}


def test_keyboard_moves_between_steps(qtbot, window):
    def key(k, mod=Qt.KeyboardModifier.NoModifier):
        qtbot.keyClick(window.stack.currentWidget(), k, mod)
        return window.stack.currentIndex()

    assert key(Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier) == 1
    assert key(Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier) == 2
    assert key(Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier) == 1
    assert key(Qt.Key.Key_5, Qt.KeyboardModifier.ControlModifier) == 4
    assert key(Qt.Key.Key_6, Qt.KeyboardModifier.ControlModifier) == 5
    assert key(Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier) == 5  # stays on the last step
    assert key(Qt.Key.Key_PageUp, Qt.KeyboardModifier.ControlModifier) == 4
    assert window.steps.currentRow() == 4  # the step list follows
    window.steps.setFocus()
    qtbot.keyClick(window.steps, Qt.Key.Key_Up)
    assert window.stack.currentIndex() == 3
    assert all(window.steps.item(i).icon().isNull() is False for i in range(6))


def test_forms_start_from_the_declared_options(window):
    """The GUI restates no default: its forms are set from the steps' declarations."""
    from app.pages.convert_page import ConvertPage
    from workflows.data import Preprocess
    from workflows.options import describe, from_dict
    from workflows.steps.convert import ConvertOptions
    from workflows.steps.quantize import QuantizeOptions

    convert = window.page(ConvertPage)
    assert convert.opset.value() == describe(ConvertOptions, "opset")[0]
    assert convert.simplify.isChecked() is describe(ConvertOptions, "simplify")[0]
    default, description = describe(QuantizeOptions, "max_accuracy_drop")
    assert convert.max_drop.value() == default and convert.max_drop.toolTip() == description
    checked = [k for k, box in convert.modes.items() if box.isChecked()]
    assert checked == describe(QuantizeOptions, "modes")[0]
    form = convert.preprocess
    assert [form.layout_.itemText(i) for i in range(form.layout_.count())] == ["NCHW", "NHWC"]
    assert [form.channels.itemText(i) for i in range(form.channels.count())] == ["RGB", "BGR", "L"]
    assert from_dict(Preprocess, form.recipe()) == Preprocess()  # an untouched form: the default
