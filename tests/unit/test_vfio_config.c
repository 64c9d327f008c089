/* --vfio / --vfio-user parsing into struct device_config. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "vfio/vfio_pci.h"
#include "vmm/config.h"

Test(vfio_config, host_and_options)
{
	struct vm_config c;
	char err[256] = "";

	config_init(&c);
	cr_assert_eq(config_parse_vfio(&c, "host=0000:03:00.1", false, err, sizeof(err)), 0, "%s",
		     err);
	cr_assert_eq(c.nr_devices, 1);
	cr_expect_eq(c.devices[0].kind, PASSTHROUGH_VFIO);
	cr_expect_str_eq(c.devices[0].path, "0000:03:00.1");
	cr_expect(!c.devices[0].iommu);
	cr_assert_eq(config_parse_vfio(&c,
				       "host=0000:03:00.2,iommu=on,mode=iommufd,"
				       "vf_token=bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3",
				       false, err, sizeof(err)),
		     0, "%s", err);
	cr_expect_str_eq(c.devices[1].path,
			 "0000:03:00.2,mode=iommufd,vf_token=bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3");
	cr_expect(c.devices[1].iommu);
	cr_expect(c.iommu, "iommu=on adds the virtio-iommu");
	cr_expect_eq(config_validate(&c, err, sizeof(err)), -EINVAL, "no kernel yet");
	config_free(&c);
}

Test(vfio_config, user_socket)
{
	struct vm_config c;
	char err[256] = "";

	config_init(&c);
	cr_assert_eq(config_parse_vfio(&c, "socket=/run/vf.sock,iommu=off", true, err, sizeof(err)),
		     0);
	cr_expect_eq(c.devices[0].kind, PASSTHROUGH_VFIO_USER);
	cr_expect_str_eq(c.devices[0].path, "/run/vf.sock");
	cr_expect(!c.devices[0].iommu);
	config_free(&c);
}

Test(vfio_config, errors_name_the_problem)
{
	struct vm_config c;
	char err[256];

	config_init(&c);
	cr_expect_eq(config_parse_vfio(&c, "host=03:00.1", false, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "not a PCI address"), "%s", err);
	cr_expect_eq(config_parse_vfio(&c, "iommu=on", false, err, sizeof(err)), -EINVAL);
	cr_expect_not_null(strstr(err, "host="), "%s", err);
	cr_expect_eq(config_parse_vfio(&c, "socket=/x,mode=iommufd", true, err, sizeof(err)),
		     -EINVAL, "mode= is for kernel VFIO only");
	cr_expect_eq(config_parse_vfio(&c, "host=0000:03:00.1,vf_token=nope", false, err,
				       sizeof(err)),
		     -EINVAL);
	cr_expect_eq(config_parse_vfio(&c, "host=0000:03:00.1,bogus", false, err, sizeof(err)),
		     -EINVAL);
	cr_expect_not_null(strstr(err, "bogus"), "%s", err);
	cr_expect_eq(config_parse_vfio(&c, "", true, err, sizeof(err)), -EINVAL);
	cr_expect_eq(c.nr_devices, 0, "nothing half-added");
	for (int i = 0; i < CONFIG_MAX_DEVICES; i++)
		cr_assert_eq(config_parse_vfio(&c, "socket=/s", true, err, sizeof(err)), 0);
	cr_expect_eq(config_parse_vfio(&c, "socket=/s", true, err, sizeof(err)), -EINVAL);
	config_free(&c);
}
