<?php
/*
 * Harness of ecshop 2.7.3 `admin/templates/payment_edit.htm`, the form of admin/payment.php's
 * act=install and act=edit, in the PHP that includes/cls_template.php compiles it into
 * (temp/compiled/admin/payment_edit.htm.php), written by hand. As in the real template:
 *  - the form posts to payment.php without an act: the save path is `isset($_POST['Submit'])`;
 *  - pay_name (input) and pay_desc (textarea) are printed with |escape (htmlspecialchars);
 *  - one row per $pay['pay_config'] item (the {foreach}): the label `<span class="label">` and,
 *    chosen by the item's type ({if $config.type == ...}):
 *      "text"     → <input name="cfg_value[]" type="text" value="…" size="40" />
 *      "textarea" → <textarea name="cfg_value[]" cols="80" rows="5">…</textarea>
 *      "select"   → <select name="cfg_value[]"> with {html_options options=$config.range
 *                   selected=$config.value}: cls_template::html_options() prints
 *                   <option value="key" selected>label</option> for the key loosely equal (==)
 *                   to the value, <option value="key">label</option> for the others;
 *    any other type (e.g. radiobox) prints no control; then the hidden cfg_name[], cfg_type[],
 *    cfg_lang[] and, when the item has a desc, the help icon and the notice span;
 *  - {$config.value}, {$config.label}, {$config.desc} and the options are printed as they are:
 *    no |escape modifier, and cls_template escapes nothing on its own;
 *  - pay_fee: a hidden field and 配送决定 for cash on delivery, else a text input
 *    ({$pay.pay_fee|default:0}); the hidden pay_id, pay_code, is_cod, is_online; the submit
 *    button named Submit and a reset button.
 * The page header and footer, the tenpay buttons of the first row and the order-check script
 * are left out. Written for the tests; no ecshop code.
 */
if (!defined('IN_ECS')) {
    die('Hacking attempt');
}

/** cls_template::html_options() for options=… selected=…. */
function harness_html_options($options, $selected)
{
    $out = '';
    foreach ((array)$options as $key => $val) {
        $out .= $key == $selected ? "<option value=\"$key\" selected>$val</option>" : "<option value=\"$key\">$val</option>";
    }
    return $out;
}

$help_open = isset($help_open) ? $help_open : 0;
?>
<html><head><meta http-equiv="Content-Type" content="text/html; charset=<?php echo EC_CHARSET; ?>" /></head><body>
<form action="payment.php" method="post">
<div class="main-div">
<table cellspacing="1" cellpadding="3" width="100%">
  <tr>
    <td class="label"><?php echo $_LANG['payment_name']; ?></td>
    <td><input name="pay_name" type="text" value="<?php echo htmlspecialchars($pay['pay_name']); ?>" size="40" /></td>
  </tr>
  <tr>
    <td class="label"><?php echo $_LANG['payment_desc']; ?></td>
    <td><textarea name="pay_desc" cols="60" rows="8"><?php echo htmlspecialchars($pay['pay_desc']); ?></textarea></td>
  </tr>
<?php foreach ($pay['pay_config'] as $key => $config) { ?>
  <tr>
    <td class="label">
<?php if ($config['desc']) { ?>
      <a href="javascript:showNotice('notice<?php echo $config['name']; ?>');" title="<?php echo $_LANG['form_notice']; ?>"><img src="images/notice.gif" width="16" height="16" border="0" alt="<?php echo $_LANG['form_notice']; ?>"></a>
<?php } ?>
      <span class="label"><?php echo $config['label']; ?>
    </td>
    <td>
<?php if ($config['type'] == 'text') { ?>
      <input name="cfg_value[]" type="<?php echo $config['type']; ?>" value="<?php echo $config['value']; ?>" size="40" />
<?php } elseif ($config['type'] == 'textarea') { ?>
      <textarea name="cfg_value[]" cols="80" rows="5"><?php echo $config['value']; ?></textarea>
<?php } elseif ($config['type'] == 'select') { ?>
      <select name="cfg_value[]"><?php echo harness_html_options($config['range'], $config['value']); ?></select>
<?php } ?>
      <input name="cfg_name[]" type="hidden" value="<?php echo $config['name']; ?>" />
      <input name="cfg_type[]" type="hidden" value="<?php echo $config['type']; ?>" />
      <input name="cfg_lang[]" type="hidden" value="<?php echo isset($config['lang']) ? $config['lang'] : ''; ?>" />
<?php if ($config['desc']) { ?>
      <br /><span class="notice-span" <?php if ($help_open) { ?>style="display:block" <?php } else { ?> style="display:none" <?php } ?> id="notice<?php echo $config['name']; ?>"><?php echo $config['desc']; ?></span>
<?php } ?>
    </td>
  </tr>
<?php } ?>
  <tr>
    <td class="label"><?php echo $_LANG['pay_fee']; ?></td>
    <td><?php if ($pay['is_cod']) { ?><input name="pay_fee" type="hidden" value="<?php echo empty($pay['pay_fee']) ? '0' : $pay['pay_fee']; ?>" /><?php echo $_LANG['decide_by_ship']; ?>
        <?php } else { ?><input name="pay_fee" type="text" value="<?php echo empty($pay['pay_fee']) ? '0' : $pay['pay_fee']; ?>" /><?php } ?>
    </td>
  </tr>
  <tr>
    <td class="label"><?php echo $_LANG['payment_is_cod']; ?></td>
    <td><?php echo $pay['is_cod'] == '1' ? $_LANG['yes'] : $_LANG['no']; ?></td>
  </tr>
  <tr>
    <td class="label"><?php echo $_LANG['payment_is_online']; ?></td>
    <td><?php echo $pay['is_online'] == '1' ? $_LANG['yes'] : $_LANG['no']; ?></td>
  </tr>
  <tr align="center">
    <td colspan="2">
      <input type="hidden"  name="pay_id"       value="<?php echo $pay['pay_id']; ?>" />
      <input type="hidden"  name="pay_code"     value="<?php echo $pay['pay_code']; ?>" />
      <input type="hidden"  name="is_cod"       value="<?php echo $pay['is_cod']; ?>" />
      <input type="hidden"  name="is_online"    value="<?php echo $pay['is_online']; ?>" />
      <input type="submit" class="button" name="Submit"       value="<?php echo $_LANG['button_submit']; ?>" />
      <input type="reset" class="button"  name="Reset"        value="<?php echo $_LANG['button_reset']; ?>" />
    </td>
  </tr>
</table>
</div>
</form>
</body></html>
